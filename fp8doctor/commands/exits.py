"""What each command's exit code means: the one table the --help epilogs and the README are held to."""

from __future__ import annotations

USAGE = (2, "bad usage or unreadable input (one line on stderr, no traceback)")
STOPPED = ("130", "interrupted by Ctrl-C (143 SIGTERM, 129 SIGHUP: 128 + the signal's number)")

EXIT_CODES: dict[str, list[tuple[str, str]]] = {
    "env": [("0", "no finding failed"), ("1", "a finding failed: FP8 would not really run as configured"),
            ("2", USAGE[1]), STOPPED],
    "repro": [("0", "a fixed path reached fp8-active here"),
              ("1", "no fixed path reached fp8-active (on a CPU without torchao, or where the training stack does not "
                    "import: nothing could run)"),
              ("2", USAGE[1]), STOPPED],
    "matrix": [("0", "every cell that could run passed (warnings and skips included)"), ("1", "a cell failed"),
               ("2", USAGE[1]), STOPPED],
    "report": [("0", "no part found a problem in your setup (the reference bug reproduced outside your stack is "
                     "shown, not counted)"),
               ("1", "a part found a problem in your setup or could not run (the report is still written)"),
               ("2", USAGE[1]), STOPPED],
    "watch": [("0", "the command succeeded and FP8 was active in every rank"),
              ("1", "the command succeeded but FP8 was not active, or its FP8 weights were not trained "
                    "(`fp8-not-trained`) (with --merge: ranks disagree, one is missing, "
                    "or none is fp8-active)"),
              ("N", "the command's own non-zero exit code, passed through (124 when --command-timeout stopped it, "
                    "128+N when signal N killed it)"),
              ("2", USAGE[1] + ", or CMD cannot be found"), STOPPED],
    "inspect": [("0", "the model was inspected (layers FP8 cannot take are findings in the output, not failures)"),
                ("2", USAGE[1] + ": a missing or unreadable config, one transformers cannot build"), STOPPED],
}


def epilog(command: str | None = None) -> str:
    """The exit-code lines of one command's --help, or every command's for the top-level --help."""
    if command is not None:
        return "exit codes:\n" + "\n".join(f"  {code:>4}  {text}" for code, text in EXIT_CODES[command])
    lines = ["exit codes (each command's --help says more):"]
    for name, table in EXIT_CODES.items():
        lines.append(f"  {name:7} " + ", ".join(f"{code} {text.split(':')[0].split(' (')[0]}" for code, text in table
                                             if code not in ("2", "130")))
    lines.append(f"  {'all':7} 2 {USAGE[1]}; {STOPPED[0]} {STOPPED[1]}")
    return "\n".join(lines)
