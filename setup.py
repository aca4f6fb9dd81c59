"""Packaging beyond pyproject.toml: the rules (top-level ``assets/``, where the product card
puts them) ship in the wheel as the package ``dataloop_rules``; ``dataloop.rules.rules_dir``
finds them there unless ``$DATALOOP_RULES`` says otherwise. pyproject.toml cannot map a
folder of another name next to a package search, so both live here."""

from setuptools import find_namespace_packages, setup

RULES = ["dataloop_rules", *(f"dataloop_rules.{p}" for p in find_namespace_packages("assets"))]

setup(
    packages=find_namespace_packages(include=["dataloop", "dataloop.*"]) + RULES,
    package_dir={"dataloop_rules": "assets"},
    package_data={"dataloop_rules": ["**/*.yaml", "**/*.sql", "**/*.md", "*.md"]},
)
