"""Reporters: where a build's state is posted (Bitbucket statuses and Code Insights reports, a Jenkins
callback), one module each, all behind the `Reporter` protocol of `base`."""

from __future__ import annotations

from schemas.settings import Settings
from workers.reporters.base import Reporter
from workers.reporters.bitbucket_cloud import BitbucketCloud
from workers.reporters.bitbucket_server import BitbucketServer
from workers.reporters.insights_http import CloudInsights, ServerInsights
from workers.reporters.jenkins_callback import JenkinsCallback


def make_reporters(settings: Settings) -> list[Reporter]:
    """Every reporter a build may have; each decides with `applies` whether it has something to say.
    A Code Insights report is a reporter of its own, so a report that fails is retried without posting
    the status again, and the other way round."""
    return [
        BitbucketCloud(settings),
        BitbucketServer(settings),
        JenkinsCallback(settings),
        CloudInsights(settings),
        ServerInsights(settings),
    ]
