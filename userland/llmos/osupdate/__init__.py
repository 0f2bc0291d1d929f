"""Updates of the OS itself (A/B images written by systemd-sysupdate), not of models.

``request`` (what the admin page asks for), ``vercmp`` (systemd's version order),
``sysupdate`` (its transfer templates and its ``list`` output), ``status`` (what the agent
reports), ``system`` (the one adapter: subprocesses, os-release, bless-boot), ``agent``
(``llmos osupdate-agent``), ``golden`` and ``gate`` (the health gate of a new version).
"""
