"""What runs inside the lab VM: ``init`` (PID 1) and ``agent`` (the command server)."""
