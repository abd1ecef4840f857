"""``python -m membership [serve|migrate|asyncapi]``."""

from membership.app import main

main()
