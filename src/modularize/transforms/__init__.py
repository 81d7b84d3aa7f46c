"""LibCST transforms, one per module, each documented with a before/after example.

`_nodes` holds the two mechanical helpers every transform shares (replace found nodes, rename free names).
"""
