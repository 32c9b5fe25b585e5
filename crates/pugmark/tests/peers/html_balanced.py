"""Reads an HTML file with Python's html.parser: every element closed in order (void
elements aside), nothing left open. Prints `balanced` or the first mismatches, exit 1."""

import sys
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Check(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-3:]}")


c = Check()
c.feed(open(sys.argv[1], encoding="utf-8").read())
c.close()
if c.errors or c.stack:
    print("\n".join(c.errors[:10]), "open:", c.stack)
    sys.exit(1)
print("balanced")
