"""The HTTP edge: aiohttp apps for the inference API and the admin listener."""
