"""Which files count: the one rule the watcher, the loader and core ask."""
import os
from pathlib import PurePath

import pytest

from hotreload.filters import SourceFilter

ROOT = PurePath("/w")
FILES = SourceFilter([ROOT])


@pytest.mark.parametrize(
    "name",
    ["4913", "a.py.swp", "a.py.swx", ".a.py.swo", "a.py~", ".#a.py", "#a.py#", "a.py___jb_tmp___",
     "a.py___jb_old___", "a.py.tmp", ".a.py.tmp", "sedAb12Cd", "a.pyc", "__pycache__/a.cpython-311.py",
     ".hidden/a.py", "a.txt", "a"],
)
def test_editor_and_tool_temp_files_are_not_sources(name):
    assert not FILES(ROOT / name)


@pytest.mark.parametrize("name", ["a.py", "pkg/__init__.py", "pkg/sub/b.py", "_helper.py"])
def test_python_files_are_sources(name):
    assert FILES(ROOT / name)


def test_a_path_outside_the_root_is_not_a_source():
    assert not FILES(PurePath("/elsewhere/a.py"))


def test_module_name_maps_files_of_the_workers_folder_to_modules():
    assert FILES.module_name("w", PurePath("/w/a.py")) == "w.a"
    assert FILES.module_name("w", PurePath("/w/pkg/__init__.py")) == "w.pkg"
    assert FILES.module_name("w", PurePath("/w/pkg/sub.py")) == "w.pkg.sub"
    for not_a_module in ("/w/my-file.py", "/w/class.py", "/elsewhere/a.py", "/w/__pycache__/a.py", "/w/.#a.py",
                         "/w/a.txt"):
        assert FILES.module_name("w", PurePath(not_a_module)) is None, not_a_module


def test_a_worker_is_a_module_or_package_directly_in_the_folder_not_starting_with_an_underscore():
    assert FILES.worker_name(PurePath("/w/a.py")) == "a"
    assert FILES.worker_name(PurePath("/w/pkg/__init__.py")) == "pkg"
    for not_a_worker in ("/w/host.py", "/w/host/__init__.py", "/w/_helper.py", "/w/pkg/sub.py", "/w/_pkg/__init__.py",
                         "/w/my-file.py", "/w/a.py~"):
        assert FILES.worker_name(PurePath(not_a_worker)) is None, not_a_worker


def test_the_root_of_a_path_is_the_deepest_root_it_is_under():
    files = SourceFilter([PurePath("/repo"), PurePath("/repo/hotreload")])
    assert files.root_of(PurePath("/repo/hotreload/core.py")) == PurePath("/repo/hotreload")
    assert files.root_of(PurePath("/repo/w.py")) == PurePath("/repo")
    assert files.root_of(PurePath("/elsewhere/w.py")) is None
    assert files.parts(PurePath("/repo/.git/x.py")) is None


def test_walk_lists_the_folder_and_its_sources_without_hidden_or_cached_ones(tmp_path):
    for name in ("a.py", "pkg/__init__.py", "pkg/b.py", ".hidden/c.py", "__pycache__/d.py", "e.txt", ".#a.py"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("")
    os.symlink(tmp_path / "pkg", tmp_path / "link")  # a symlinked folder is not followed
    assert SourceFilter([tmp_path]).walk() == [tmp_path, tmp_path / "a.py", tmp_path / "pkg" / "__init__.py",
                                               tmp_path / "pkg" / "b.py"]


@pytest.mark.parametrize(
    "glob, matching, not_matching",
    [
        ("settings.yaml", ["settings.yaml"], ["sub/settings.yaml", "settings.yml", "xsettings.yaml"]),
        ("templates/**/*.html", ["templates/a.html", "templates/x/y/b.html"],
         ["templates/a.htm", "a.html", "other/templates/a.html", "templates/a.html~"]),
        ("*.yaml", ["a.yaml"], ["sub/a.yaml"]),
        ("conf/?.ini", ["conf/a.ini"], ["conf/ab.ini", "conf/a/b.ini"]),
        ("data/[ab]*.csv", ["data/a1.csv", "data/b.csv"], ["data/c.csv"]),
        ("data/[!a]*.csv", ["data/c.csv"], ["data/a.csv"]),
        ("static/**", ["static/a.css", "static/x/y.js"], ["static.css"]),
        ("**/*.json", ["a.json", "x/y/a.json"], ["a.jsonl"]),
        ("odd[.txt", ["odd[.txt"], ["oddx.txt"]),
        ("a+b (1).txt", ["a+b (1).txt"], ["aab (1).txt"]),
    ],
)
def test_watched_globs_match_paths_relative_to_the_folder_with_star_not_crossing_folders(glob, matching, not_matching):
    files = SourceFilter([ROOT])
    files.watch("page", [glob])
    for name in matching:
        assert files.watchers(ROOT / name) == ["page"], name
        assert files(ROOT / name), name  # the watcher takes its events
    for name in not_matching:
        assert files.watchers(ROOT / name) == [], name


def test_watched_files_are_neither_modules_nor_workers_and_editor_files_never_count():
    files = SourceFilter([ROOT])
    files.watch("page", ["*"])
    assert files(ROOT / "notes.txt") and files.module_name("w", ROOT / "notes.txt") is None
    assert files.worker_name(ROOT / "notes.txt") is None
    for temp in ("notes.txt~", ".notes.txt.swp", "notes.txt___jb_tmp___", ".#notes.txt", "__pycache__/x"):
        assert files.watchers(ROOT / temp) == [] and not files(ROOT / temp), temp


def test_each_worker_has_its_own_globs_and_an_empty_list_forgets_them():
    files = SourceFilter([ROOT])
    files.watch("a", ["shared.yaml", "a/*.html"])
    files.watch("b", ["shared.yaml"])
    assert files.watchers(ROOT / "shared.yaml") == ["a", "b"]
    assert files.watchers(ROOT / "a/x.html") == ["a"]
    files.watch("a", [])
    assert files.watchers(ROOT / "shared.yaml") == ["b"] and not files(ROOT / "a/x.html")
    assert files.watchers(PurePath("/elsewhere/shared.yaml")) == []


def test_watched_files_lists_what_a_worker_watches_now(tmp_path):
    for name in ("templates/a.html", "templates/x/b.html", "templates/c.txt", "settings.yaml", ".hidden/d.html",
                 "templates/a.html~"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    files = SourceFilter([tmp_path])
    files.watch("page", ["templates/**/*.html", "settings.yaml"])
    assert files.watched_files("page") == [tmp_path / "settings.yaml", tmp_path / "templates" / "a.html",
                                           tmp_path / "templates" / "x" / "b.html"]
    assert files.watched_files("other") == []
    assert tmp_path / "settings.yaml" not in files.walk()  # walk lists the Python sources


def test_the_procfile_directly_in_the_workers_folder_counts_but_is_no_module_or_worker(tmp_path):
    files = SourceFilter([PurePath("/w"), PurePath("/w/hotreload")])
    assert files(PurePath("/w/Procfile"))
    for elsewhere in ("/w/pkg/Procfile", "/w/hotreload/Procfile", "/w/Procfile~", "/w/.Procfile.swp", "/w/procfile"):
        assert not files(PurePath(elsewhere)), elsewhere
    assert files.module_name("w", PurePath("/w/Procfile")) is None
    assert files.worker_name(PurePath("/w/Procfile")) is None
    (tmp_path / "Procfile").write_text("web: x\n")
    (tmp_path / "a.py").write_text("")
    assert SourceFilter([tmp_path]).walk() == [tmp_path, tmp_path / "Procfile", tmp_path / "a.py"]
