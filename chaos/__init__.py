"""``make chaos``: two qrevents hosts behind nginx, with money flowing while everything fails."""
