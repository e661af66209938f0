"""Stand-ins for the outside world, shared by the tests and `bench/`: a fake Kubernetes API server,
Bitbucket and Jenkins endpoints that check each request, real git repositories. Never imported by
podci itself."""
