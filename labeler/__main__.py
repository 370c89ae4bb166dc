"""``python -m labeler`` (also what ``torchrun -m labeler`` starts)."""

from labeler.cli import main

raise SystemExit(main())
