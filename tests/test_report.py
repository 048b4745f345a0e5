"""The studies' results.md writer: generated numbers are replaced, a hand-written reading kept."""

from ebrl.logging import write_report


def test_write_report_replaces_numbers_and_keeps_the_reading(tmp_path):
    path = tmp_path / "results.md"
    write_report(path, ["# Study", "", "| a | 1 |"])
    assert path.read_text() == "# Study\n\n| a | 1 |\n"
    reading = "## Reading (written by hand, today)\n\nThe 1 is a fluke.\n"
    path.write_text(path.read_text() + "\n" + reading)
    write_report(path, ["# Study", "", "| a | 2 |"])
    text = path.read_text()
    assert "| a | 2 |" in text and "| a | 1 |" not in text
    assert text.endswith(reading) and text.count("## Reading") == 1
