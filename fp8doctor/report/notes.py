"""Reasons said once: every "could not run here" sentence is numbered the first time it appears and cited by
its number afterwards, so the Transformer Engine sentence is written once however many runs it skipped."""

from __future__ import annotations

from collections.abc import Iterable


def sentences(text: str) -> list[str]:
    """Split at a sentence end ('.' or ';'-free ending, then a space and a capital) outside brackets and code."""
    out: list[str] = []
    depth, code, start = 0, False, 0
    for i, ch in enumerate(text):
        if ch == "`":
            code = not code
        elif not code and ch in "([":
            depth += 1
        elif not code and ch in ")]":
            depth = max(0, depth - 1)
        elif (ch == "." and not code and depth == 0 and i + 2 < len(text) and text[i + 1] == " "
              and text[i + 2].isupper()):
            out.append(text[start:i + 1].strip())
            start = i + 2
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


class Notes:
    """Numbered reasons, each sentence once, with what each one kept from running."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.affects: dict[str, list[str]] = {}
        self.shown: set[str] = set()  # lines the first screen wrote in full (the details do not repeat them)

    def known(self, text: str) -> bool:
        return all(s in self.affects for s in sentences(text))

    def cite(self, text: str, what: str | None = None) -> str:
        """'[1, 2]' for the sentences of text (registered on first sight); what is recorded against each."""
        nums = []
        for sentence in sentences(text):
            if sentence not in self.affects:
                self.order.append(sentence)
                self.affects[sentence] = []
            if what is not None and what not in self.affects[sentence]:
                self.affects[sentence].append(what)
            nums.append(self.order.index(sentence) + 1)
        return "[" + ", ".join(str(n) for n in dict.fromkeys(nums)) + "]" if nums else ""

    def cite_inside(self, text: str) -> str:
        """text with every numbered sentence it quotes replaced by 'see [n]' (a reason is said once)."""
        for n, sentence in enumerate(self.order, 1):
            text = text.replace(sentence, f"see [{n}]")
        return text

    def lines(self, shown: int = 3) -> Iterable[str]:
        for n, sentence in enumerate(self.order, 1):
            what = self.affects[sentence]
            more = f" and {len(what) - shown} more" if len(what) > shown else ""
            kept = f" Not checked: {'; '.join(what[:shown])}{more}." if what else ""
            end = "" if not kept or sentence.endswith((".", "!", "?")) else "."
            yield f"{n}. {sentence}{end}{kept}"
