"""Model runtimes behind one small protocol (see ``base``)."""
