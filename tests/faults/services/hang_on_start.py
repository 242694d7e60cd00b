"""A service that never binds its socket: it sleeps (argv[1] seconds) or exits (code argv[2])."""

import sys
import time

if __name__ == "__main__":
    time.sleep(float(sys.argv[1]))
    sys.exit(int(sys.argv[2]))
