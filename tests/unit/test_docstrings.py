"""Every public module, class, function and method of the product says what
it decides or returns.

The product is the package nvo3_ryu_app without its testbed/ (the Mininet
test bench, like tests/ and benchmarks/, is not checked here).  Public means
a name without a leading underscore, at module level or in a public class;
functions nested in functions are not public.
"""

import ast
import os

import nvo3_ryu_app

PACKAGE = os.path.dirname(os.path.abspath(nvo3_ryu_app.__file__))
NOT_CHECKED = ('testbed',)


def product_files():
    """Paths of the product's modules."""
    for dirpath, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs
                         if d not in NOT_CHECKED and d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                yield os.path.join(dirpath, name)


def undocumented(path):
    """Public definitions of the module at ``path`` without a docstring."""
    with open(path) as handle:
        tree = ast.parse(handle.read())
    if not ast.get_docstring(tree):
        yield '(module)'

    def walk(node, prefix):
        for child in node.body:
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                      ast.ClassDef)):
                continue
            if child.name.startswith('_'):
                continue
            if not ast.get_docstring(child):
                yield prefix + child.name
            if isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + '.')
    yield from walk(tree, '')


def test_the_walk_sees_the_product_and_not_the_testbed():
    paths = [os.path.relpath(p, PACKAGE) for p in product_files()]
    assert 'app.py' in paths and os.path.join('authority', 'model.py') in \
        paths
    assert not [p for p in paths if p.startswith('testbed')]


def test_every_public_definition_has_a_docstring():
    missing = ['%s: %s' % (os.path.relpath(path, PACKAGE), name)
               for path in product_files() for name in undocumented(path)]
    assert not missing, '\n'.join(missing)


def test_an_undocumented_definition_is_found(tmp_path):
    path = tmp_path / 'sample.py'
    path.write_text('"""Doc."""\n\n\nclass Pub:\n    """Doc."""\n\n'
                    '    def method(self):\n        pass\n\n'
                    '    def _private(self):\n        pass\n\n\n'
                    'def function():\n    pass\n')
    assert list(undocumented(str(path))) == ['Pub.method', 'function']
