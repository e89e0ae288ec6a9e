"""nodewall: host firewalls for fleets of managed database nodes."""

__version__ = "0.1.0"
