"""Only what pyproject.toml cannot say: the top-level ``resources/`` folder is shipped inside the
package as ``labeler.resources`` beside every package found under ``labeler/``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["labeler", "labeler.*"]), "labeler.resources"],
    package_dir={"labeler.resources": "resources"},
)
