"""``emberllm run -cnv`` driven through a pseudo-terminal, as a person would use it."""

from __future__ import annotations

import sys

import pexpect
import pytest


@pytest.mark.slow
def test_three_turn_conversation_with_ctrl_c_and_exit(gemma_path):
    child = pexpect.spawn(sys.executable, ["-m", "emberllm.cli", "run", "-m", str(gemma_path), "-cnv", "--temp", "0",
                                           "-n", "24", "-c", "1024", "-t", "2"], encoding="utf-8", timeout=120)
    try:
        child.expect("conversation mode")
        for turn in ("Hello, who are you?", "What is the capital of France?", "Thanks!"):
            child.expect(r"\n> ")
            child.sendline(turn)
            child.expect(turn)  # the terminal echoes the line
        child.expect(r"\n> ")
        # Ctrl+C during a reply stops the reply, not the program
        child.sendline("Tell me a long story about dragons.")
        child.expect("dragons")
        child.sendintr()
        child.expect(r"\n> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
