"""Shell completion of the `convoy` command, as bash asks for it (what `convoy --install-completion` sets up)."""

import os
import subprocess
import sys
from pathlib import Path

CONVOY_SCRIPT = Path(sys.executable).parent / "convoy"  # completion keys on the program's name, as installed


def complete(words: str) -> list[str]:
    """What bash would offer for the last word of `words`."""
    env = {**os.environ, "_CONVOY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    done = subprocess.run([str(CONVOY_SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_subcommands_and_options():
    assert complete("convoy sn") == ["snapshot"]
    assert complete("convoy snapshot cr") == ["create"]
    assert "--json" in complete("convoy list --")


def test_the_completion_script_for_bash_calls_back_into_convoy():
    # Typer asks the process tree which shell the user runs (under make that is sh, which it does not support);
    # its own switch for tests makes it take the shell named here instead, as a user in bash gets
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run(
        [str(CONVOY_SCRIPT), "--show-completion", "bash"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "_CONVOY_COMPLETE=complete_bash" in done.stdout and "complete -o default -F _convoy_completion convoy" in done.stdout
