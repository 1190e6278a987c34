"""The package's import graph: no cycle, and no import from a lower layer to a higher one.

The layers (docs/DESIGN.md draws them) are read from `LAYERS` below, lowest first; a module may
import its own layer's modules and any lower layer's, never a higher one's. Every import counts,
also the ones inside functions (a lazy import is still a dependency). Unit of the graph: a
subpackage (`ctp_tf.data`, `ctp_tf.training`, ...) or a top-level module; the cycle check also
runs on single modules (`ctp_tf.downstream.evaluate` <-> `ctp_tf.downstream.finetune`).
"""

import ast
import re
import pathlib

import ctp_tf

PACKAGE = pathlib.Path(ctp_tf.__file__).parent

# Lowest first. A unit not listed here fails the test: place a new module on purpose.
LAYERS = [
    {"ctp_tf", "ctp_tf.errors", "ctp_tf.seeds", "ctp_tf.fileio", "ctp_tf.figures",
     "ctp_tf.defaults"},                                          # 0 base: no ctp_tf imports
    {"ctp_tf.layers"},                                            # 1 keras.ops layers
    {"ctp_tf.models", "ctp_tf.data"},                             # 2 models | input pipelines
    {"ctp_tf.training"},                                          # 3 the fit loop, pretraining
    {"ctp_tf.downstream"},                                        # 4 export users, finetuning
    {"ctp_tf.plots", "ctp_tf.curves", "ctp_tf.cli"},              # 5 figures, script helpers
    {"ctp_tf.demo"},                                              # 6 the demo (a user of all)
]


def _module_name(path):
  rel = path.relative_to(PACKAGE.parent).with_suffix("")
  parts = list(rel.parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def module_imports(source, package=None):
  """The ctp_tf modules (dotted names) a source text imports, at any depth."""
  names = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names if a.name.split(".")[0] == "ctp_tf")
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ""
      if node.level:   # relative import
        base = (package or "").split(".")
        base = base[:len(base) - node.level + 1]
        module = ".".join(base + ([module] if module else []))
      if module.split(".")[0] != "ctp_tf":
        continue
      for a in node.names:
        sub = f"{module}.{a.name}"
        is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() or \
            (PACKAGE.parent / sub.replace(".", "/")).is_dir()
        names.add(sub if is_module else module)
  return names


def module_graph():
  graph = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    graph[name] = module_imports(path.read_text(), package) - {name}
  return graph


def unit_of(module):
  return ".".join(module.split(".")[:2])


def unit_graph(graph):
  units = {}
  for a, bs in graph.items():
    units.setdefault(unit_of(a), set()).update(
        unit_of(b) for b in bs if unit_of(b) != unit_of(a))
  return units


def find_cycle(graph):
  """One cycle as a list of nodes, or None."""
  state, stack = {}, []

  def visit(n):
    state[n] = 1
    stack.append(n)
    for m in sorted(graph.get(n, ())):
      if state.get(m) == 1:
        return stack[stack.index(m):] + [m]
      if m not in state:
        found = visit(m)
        if found:
          return found
    stack.pop()
    state[n] = 2
    return None

  for n in sorted(graph):
    if n not in state:
      found = visit(n)
      if found:
        return found
  return None


def layer_violations(units):
  layer = {u: i for i, names in enumerate(LAYERS) for u in names}
  bad = [f"{a} is on no layer (add it to LAYERS and docs/DESIGN.md)" for a in units
         if a not in layer]
  for a, bs in sorted(units.items()):
    for b in sorted(bs):
      if b not in layer:
        bad.append(f"{b} is on no layer")
      elif a in layer and layer[b] > layer[a]:
        bad.append(f"{a} (layer {layer[a]}) imports {b} (layer {layer[b]})")
  return bad


def test_no_import_cycle_between_modules():
  graph = module_graph()
  assert len(graph) > 30   # the scan really saw the package
  assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_import_cycle_between_subpackages():
  units = unit_graph(module_graph())
  assert find_cycle(units) is None, f"import cycle: {' -> '.join(find_cycle(units))}"


def test_imports_only_go_down_the_layers():
  assert layer_violations(unit_graph(module_graph())) == []


def test_the_checks_see_cycles_and_upward_imports():
  # The helpers themselves: a planted cycle / upward import is reported.
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None
  assert layer_violations({"ctp_tf.data": {"ctp_tf.training"}}) == [
      "ctp_tf.data (layer 2) imports ctp_tf.training (layer 3)"]
  assert module_imports("def f():\n  from ctp_tf.training import pretrain\n") == {
      "ctp_tf.training.pretrain"}


def test_the_library_never_imports_the_demo():
  # The demo (ctp_tf/demo/) is a user of the library: only scripts and tests import it.
  users = sorted(m for m, imports in module_graph().items() if unit_of(m) != "ctp_tf.demo"
                 and any(unit_of(i) == "ctp_tf.demo" for i in imports))
  assert users == []


SYS_PATH_EDIT = re.compile(r"^[^#\n]*\bsys\.path\s*(\.insert|\.append|\.extend|\+=|=[^=])", re.M)


def test_nothing_edits_sys_path():
  # Scripts, benchmarks, tools and tests import the installed package (DESIGN.md).
  repo = PACKAGE.parent
  found = [f"{p.relative_to(repo)}:{text[:m.start()].count(chr(10)) + 1}"
           for folder in ("ctp_tf", "scripts", "benchmarks", "tools", "tests")
           for p in sorted((repo / folder).rglob("*.py"))
           for text in [p.read_text()] for m in SYS_PATH_EDIT.finditer(text)]
  assert found == []
  assert SYS_PATH_EDIT.search("import sys\nsys.path.insert(0, ROOT)\n")
  assert not SYS_PATH_EDIT.search("# its folder is sys.path[0] when run as a script\n")
