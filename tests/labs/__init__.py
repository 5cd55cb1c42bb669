"""What the cloud emulators (tests/ec2lab, tests/dolab) share: the data plane behind their volumes (dataplane.py)."""
