"""A test service that fails before binding its socket: exits with code 3 after a message."""

import sys

print("prestart_crash: giving up before binding", file=sys.stderr)
sys.exit(3)
