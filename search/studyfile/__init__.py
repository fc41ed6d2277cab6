"""The study file: its schema (`schema`, pydantic models of studies/*.toml), what a loaded
file gives the search (`spec.StudySpec`), the settings it may give (`settings`), the space
it searches (`space`), the samplers and pruners it may name (`components`), its one-line
errors (`validation`) and the reference page rendered from the schema (`reference`).

Above search.pruners (which it registers) and search.records; nothing here opens a store
or reads data.
"""

from search.studyfile.schema import (
    StudyFile,
    builtin_study_path,
    load_study_file,
    name_for_file,
)
from search.studyfile.spec import StudySpec

__all__ = ["StudyFile", "StudySpec", "builtin_study_path", "load_study_file", "name_for_file"]
