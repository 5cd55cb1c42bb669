"""tests/guest/inside needs the guest's kernel (device-mapper, NFS server): collected only inside the guest,
where tests/guest/boot-inside.sh sets CONVOY_GUEST=1. On the host, test_in_guest.py boots it."""

import os

collect_ignore = [] if os.environ.get("CONVOY_GUEST") == "1" else ["inside"]
