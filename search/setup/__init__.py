"""A run set up: the command line's options and the study file resolved once, into one frozen
`ResolvedRun` (its data read and checked, its name, device, seed, split, documents per
epoch, vectors and tags) that every later step takes and none derives again; and each
trial's configurations built from its parameters (`build`), the step a search trial and a
refit fold share.

Above the study file and the stores; below the session, the exports and the command line,
which all stand on it.
"""
