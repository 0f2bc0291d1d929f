"""The vault: sealed packs and the keys that open them.

- ``format``: the sealed file's bytes (header fields, nonces, associated data); pure.
- ``aead``: the only module that imports ``cryptography`` (AES-256-GCM).
- ``sealed``: seal a pack; open, authenticate and stream-decrypt a sealed pack.
- ``kek`` / ``keys``: the fleet key (key-encryption key) and the providers that release it:
  ``keyfile`` (development), ``credential`` (systemd credential), ``tpm2`` (TPM-sealed blob,
  through the ``systemd_creds`` adapter).
"""
