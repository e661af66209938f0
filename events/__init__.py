"""Webhook intake: verify, parse, classify, enqueue. Never imports `kubernetes`.

The receiver (Bitbucket Cloud, Bitbucket Server/Data Center, Jenkins) is not written yet; builds are
started with `podci run` or `workers.submit.submit` meanwhile.
"""
