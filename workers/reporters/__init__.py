"""Reporters: where a build's state is posted (Bitbucket statuses, a Jenkins callback)."""
