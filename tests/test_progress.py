import io

from classsel.progress import progress_bar


def test_progress_bar_passes_items_through_on_and_off():
    items = [3, 1, 4, 1, 5]
    out = io.StringIO()
    assert list(progress_bar(items, "on", file=out)) == items
    assert "on" in out.getvalue() and "5/5" in out.getvalue()
    quiet = io.StringIO()
    assert list(progress_bar(items, "off", enabled=False, file=quiet)) == items
    assert quiet.getvalue() == ""


def test_manual_bar_counts_steps_and_does_nothing_when_off():
    out = io.StringIO()
    bar = progress_bar(desc="train", total=10, initial=4, unit="step", file=out)
    bar.update(3)
    bar.close()
    assert "7/10" in out.getvalue() and "step" in out.getvalue()
    off = progress_bar(desc="train", total=10, enabled=False)
    off.update(3)
    off.set_postfix(loss="0.1")
    off.close()
