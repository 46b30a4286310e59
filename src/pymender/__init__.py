"""pymender: an A/B system updater for embedded Linux that speaks the Mender Artifact format."""

__version__ = "0.1.0"
