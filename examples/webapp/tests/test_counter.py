import json
import os
import unittest
import urllib.request

URL = os.environ["COUNTER_URL"]


def call(method: str, name: str) -> int:
    request = urllib.request.Request(f"{URL}/{name}", method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["value"]


class CounterTest(unittest.TestCase):
    def test_starts_at_zero(self) -> None:
        self.assertEqual(call("GET", "fresh"), 0)

    def test_increments(self) -> None:
        call("POST", "visits")
        self.assertEqual(call("POST", "visits"), 2)


if __name__ == "__main__":
    unittest.main()
