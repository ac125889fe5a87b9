"""docs/porting.md runs as written: every snippet executes, every error shown is the one raised.

The page's python blocks run top to bottom in one namespace (like a notebook). A block whose first
line is ``# raises NAME`` must raise exactly that exception, and the ``text`` block right after it
must be the message a user sees (``NAME: str(error)``), verbatim.

The README's "rollout and replay" section is pinned here too: :data:`README_REPLAY_PROPOSAL` is
its code, executed as is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest

import tether

ROOT = Path(__file__).resolve().parent.parent
PORTING = ROOT / "docs" / "porting.md"
BLOCK = re.compile(r"```(python|text)\n(.*?)```", flags=re.DOTALL)
RAISES = re.compile(r"# raises (\w+)\n")


class Snippet(NamedTuple):
    """One python block of the page, with the error it must raise (and its message), if any."""

    code: str
    line: int
    raises: str | None
    message: str | None


def snippets(text: str) -> list[Snippet]:
    """The page's python blocks in order, each paired with the text block that shows its error."""
    blocks = [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2) for m in BLOCK.finditer(text)]
    out = []
    for i, (kind, code, line) in enumerate(blocks):
        if kind != "python":
            continue
        raises = RAISES.match(code)
        message = None
        if raises:
            following = blocks[i + 1][0] if i + 1 < len(blocks) else None
            assert following == "text", f"line {line}: a `# raises` block needs a text block after it"
            message = blocks[i + 1][1].strip()
        out.append(Snippet(code, line, raises.group(1) if raises else None, message))
    return out


def run_in_order(found: list[Snippet], path: Path) -> dict[str, object]:
    """Execute the snippets in one namespace; check each expected error's type and message."""
    namespace: dict[str, object] = {"__name__": "porting_doc"}
    for snip in found:
        # Pad with newlines so that a traceback points at the snippet's line in the page.
        code = compile("\n" * (snip.line - 1) + snip.code, str(path), "exec")
        if snip.raises is None:
            exec(code, namespace)
            continue
        with pytest.raises(Exception) as info:  # noqa: PT011 - the type is checked by name below
            exec(code, namespace)
        shown = f"{type(info.value).__name__}: {info.value}"
        assert type(info.value).__name__ == snip.raises, f"line {snip.line}: {shown}"
        assert shown == snip.message, f"line {snip.line}: the page shows\n{snip.message}\nbut tether says\n{shown}"
    return namespace


@pytest.fixture
def restore_mode() -> object:
    """The page calls tether.set_mode("strict"); put the session's mode back afterwards."""
    before = tether.get_mode()
    yield
    tether.set_mode(before)


@pytest.mark.usefixtures("restore_mode")
def test_porting_guide_runs_and_shows_real_errors() -> None:
    """Every snippet of docs/porting.md runs, in order, and each error it shows is tether's own."""
    found = snippets(PORTING.read_text(encoding="utf-8"))
    assert len(found) >= 10
    assert sum(s.raises is not None for s in found) >= 6
    namespace = run_in_order(found, PORTING)
    assert tether.get_mode() == "strict"
    result = namespace["result"]
    assert result.log_prob.shape == (6, 2)  # type: ignore[attr-defined]


def test_the_three_replay_mistakes_are_on_the_page() -> None:
    """The page shows all-zero starts, shifted starts and a late snapshot, each raising."""
    found = [s for s in snippets(PORTING.read_text(encoding="utf-8")) if s.raises == "ReplayAlignmentError"]
    codes = "\n".join(s.code for s in found)
    assert "torch.zeros_like(dones)" in codes
    assert "shifted[:-1] = dones[1:]" in codes
    assert "next_state.snapshot()" in codes
    assert any("taken after the rollout" in (s.message or "") for s in found)
    assert issubclass(tether.ReplayAlignmentError, tether.LifecycleError)
    assert issubclass(tether.ReplayAlignmentError, RuntimeError)  # as the page says


def test_snippet_parser_pairs_errors_with_their_messages() -> None:
    """A `# raises` block takes the text block after it; a plain block takes none."""
    page = "```python\nx = 1\n```\n\n```python\n# raises KeyError\n{}['k']\n```\n\n```text\nKeyError: 'k'\n```\n"
    found = snippets(page)
    assert [(s.raises, s.message) for s in found] == [(None, None), ("KeyError", "KeyError: 'k'")]
    run_in_order(found, Path("page.md"))
    wrong = [Snippet("{}['k']\n", 1, "KeyError", "KeyError: 'other'")]
    with pytest.raises(AssertionError, match="the page shows"):
        run_in_order(wrong, Path("page.md"))


# The code of the README's "rollout and replay" section, verbatim (keep them in sync).
README_REPLAY_PROPOSAL = '''\
import gymnasium as gym, numpy as np, torch
import tether.envs                                   # registers tether/CartPole-NoVel-v0
from tether import EpisodeClock, set_mode, track
from tether.sequence import unroll

set_mode("strict")                                   # raise on any lifecycle or replay mistake
envs = gym.vector.SyncVectorEnv([lambda: gym.make("tether/CartPole-NoVel-v0")] * 4,
                                autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
lstm, head = track(torch.nn.LSTM(4, 64)), torch.nn.Linear(64, 2)
opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
clock = EpisodeClock(4)                              # the source of truth for boundaries
state = lstm.initial_state(4, clock)                 # [L, B, H] zeros, stamped with tick 0
obs, _ = envs.reset(seed=0)
T = 32
for update in range(10):
    start = state.snapshot()                         # BEFORE the rollout: the replay starts here
    xs, acts = torch.zeros(T, 4, 4), torch.zeros(T, 4, dtype=torch.long)  # [T, B, obs], [T, B]
    starts = np.zeros((T, 4), dtype=bool)            # starts[t, b]: obs[t, b] begins an episode
    with torch.no_grad():
        for t in range(T):
            xs[t] = torch.as_tensor(obs, dtype=torch.float32)
            y, state = lstm(xs[t][None], state)      # checked: right tick, right episodes
            acts[t] = torch.distributions.Categorical(logits=head(y[0])).sample()
            obs, reward, terminated, truncated, info = envs.step(acts[t].numpy())
            done = terminated | truncated
            clock.advance(done)                      # tick += 1, done rows get new episode ids
            state = state.reset(done)                # zero those rows, adopt the new ids
            if t + 1 < T:
                starts[t + 1] = done                 # obs[t + 1] starts a new episode
    clock.end_window()                               # the optimizer boundary
    y, _ = unroll(lstm, xs, starts, start)           # the replay: one fused call, checked aligned
    loss = -torch.distributions.Categorical(logits=head(y)).log_prob(acts).mean()  # your loss here
    opt.zero_grad(); loss.backward(); opt.step()
'''


@pytest.mark.usefixtures("restore_mode")
def test_readme_replay_proposal_runs() -> None:
    """The proposed README loop runs in strict mode and its replay sees real episode starts."""
    namespace: dict[str, object] = {"__name__": "readme_proposal"}
    exec(compile(README_REPLAY_PROPOSAL, "README.md", "exec"), namespace)
    clock, state = namespace["clock"], namespace["state"]
    assert clock.tick == state.tick == 320  # type: ignore[attr-defined]
    assert clock.window == 10  # type: ignore[attr-defined]
    assert clock.episode_ids.max() >= 4  # type: ignore[attr-defined]  # episodes ended and restarted


def test_readme_replay_proposal_is_published_verbatim() -> None:
    """README.md holds the rollout-and-replay code verbatim."""
    assert README_REPLAY_PROPOSAL in (ROOT / "README.md").read_text(encoding="utf-8")
