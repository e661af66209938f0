"""The `podci` command and the embedded single-machine stack it can start."""
