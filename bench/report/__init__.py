"""``bench report``: the paper's tables (Tables 2-5, efficiency) and figures (Figures 3-5, score
against parameters) rendered from cached results into ``reports/<suite>.md`` + PNGs.

Modules: ``data`` (results -> frames), ``reference`` (the paper's published numbers and
scales), ``tables`` (markdown), ``figures`` (matplotlib Figures), ``render`` (files).
"""
