"""Docker's VolumeDriver protocol, a thin adapter over the volume service."""
