"""Export: a run's model as files another program can load, checked for parity.

May import every other part of ``imgclf_core`` except the CLI.
"""
