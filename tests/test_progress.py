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


def test_a_terminal_that_reports_no_width_still_shows_the_bar():
    """On a pseudo-terminal that nobody sized (0 columns: some CI runners, script(1) without a terminal),
    the request's bar (dynamic width) is drawn at the default width instead of as nothing."""
    import os
    import pty
    import sys

    script = ("import os\nprint('columns', os.get_terminal_size(2).columns)\n"
              "from classsel.progress import progress_bar\n"
              "bar = progress_bar(desc='reproduce', total=3, unit='step', dynamic_ncols=True)\n"
              "bar.update(3)\nbar.close()\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child, on the new terminal (0 rows, 0 columns)
        os.execv(sys.executable, [sys.executable, "-c", script])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    assert out.startswith(b"columns 0") and b"reproduce: 100%|" in out and b"3/3" in out, out


def test_the_requests_bar_estimates_the_time_left_from_the_average_rate_since_its_start():
    """A burst (an analysis reporting a checkpoint at once, a run that ends) does not swing the time left:
    after 10 of 100 units in 8 s and 40 more in the next 2 s, 50 units are left at 50 units per 10 s."""
    from types import SimpleNamespace

    from classsel.parallel import _Bar

    task = SimpleNamespace(key=("train", "abc", 0), kind="train", cost=lambda: 100)
    now = [0.0]
    bar = _Bar([task], enabled=True)
    bar.bar._time = lambda: now[0]
    bar.bar.start_t = bar.bar.last_print_t = 0.0
    for t, units in ((8.0, 10), (10.0, 40)):
        now[0] = t
        bar.update(task.key, units)
    meter = bar.bar.format_meter(**bar.bar.format_dict)
    bar.close()
    assert "50/100 [00:10<00:10" in meter, meter
