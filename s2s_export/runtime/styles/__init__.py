"""Search styles that reproduce another tool's decoder exactly (registered in
``runtime/search.py``'s ``STYLES``): ``joeynmt.py`` (Joey NMT 2.3), ``opennmt.py`` (OpenNMT-py 3.5).
Each runs over the ``Backend`` protocol like the ``s2s`` style; torch-free."""
