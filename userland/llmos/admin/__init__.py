"""The admin console's logic, free of HTTP: password hashes, sessions, CSRF, login rate
limiting, and the chart series sampled from the metrics.

The aiohttp side lives in ``llmos.web.admin``.
"""
