"""Reporters: where a build's state is posted (Bitbucket statuses, a Jenkins callback), one module each,
all behind the `Reporter` protocol of `base`."""

from __future__ import annotations

from schemas.settings import Settings
from workers.reporters.base import Reporter
from workers.reporters.bitbucket_cloud import BitbucketCloud
from workers.reporters.bitbucket_server import BitbucketServer
from workers.reporters.jenkins_callback import JenkinsCallback


def make_reporters(settings: Settings) -> list[Reporter]:
    """Every reporter a build may have; each decides with `applies` whether it has something to say."""
    return [BitbucketCloud(settings), BitbucketServer(settings), JenkinsCallback(settings)]
