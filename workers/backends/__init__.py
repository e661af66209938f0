"""Cluster backends: where a build's Service, volume and pod actually live."""
