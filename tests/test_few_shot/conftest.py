"""The K-shot tests run the tools as tests/test_tools does: its helpers
(``_tool_helpers``) are importable here."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'test_tools'))
