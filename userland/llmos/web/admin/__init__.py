"""The admin console's HTTP edge (its own listener); its HTTP-free logic is in ``llmos.admin``."""
