"""The tail input: container logs (CRI, Docker json-file) and plain log files.

``config`` holds its keys, ``discovery`` finds files and reads container metadata from their
paths, ``positions`` stores read offsets by device and inode, ``reader`` follows one file
(offsets, lines, rotation), ``files`` keeps the set of followed files (new, rotated, lost, the
open-file cap), ``input`` runs the polling loop and submits batches.
"""

from agent.inputs.tail.config import TailInputConfig
from agent.inputs.tail.input import TailInput

__all__ = ["TailInput", "TailInputConfig"]
