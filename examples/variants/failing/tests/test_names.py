import json
import os
import unittest
import urllib.request

URL = os.environ["COUNTER_URL"]


class NamesTest(unittest.TestCase):
    def test_counters_are_separate(self) -> None:
        for name in ("a", "a", "b"):
            urllib.request.urlopen(urllib.request.Request(f"{URL}/{name}", method="POST"), timeout=5).close()
        with urllib.request.urlopen(f"{URL}/b", timeout=5) as response:
            # Wrong on purpose: this branch shows what a failing build looks like.
            self.assertEqual(json.load(response)["value"], 2)


if __name__ == "__main__":
    unittest.main()
