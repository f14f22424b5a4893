"""A board measured from the CI host over SSH: the agent sent to the board (agent.py: standard
library, Python 3.6), the transport (ssh.py), the boards and the devices file (boards.py), and the
host's side of the agent (client.py)."""
