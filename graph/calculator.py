"""An exact calculator: arithmetic on rational numbers, walked from Python's syntax tree.

Nothing is ever passed to ``eval``: the expression is parsed, and only numbers, the arithmetic
operators, the functions and constants below, and parentheses are allowed. Integers, decimals
and fractions stay exact (``0.1 + 0.2`` is ``0.3``); only functions whose results are irrational
(``sqrt(2)``, ``log``, ``sin``) give a float. Sizes are bounded: the expression's length, the
exponent of a power, the digits of every intermediate number and the time spent, so that no
expression can hold the worker up.
"""

import ast
import math
import re
import time
from collections.abc import Callable
from fractions import Fraction

MAX_LENGTH = 500
"""Characters in an expression."""
MAX_EXPONENT = 10_000
"""The largest exponent of an exact power."""
MAX_DIGITS = 5_000
"""Digits of the numerator or denominator of any number along the way."""
MAX_FACTORIAL = 1_000
TIME_LIMIT_S = 0.5

Number = Fraction | float


class CalculatorError(ValueError):
    """The expression cannot be evaluated: the message says why, for the model to read."""


_PERCENT_OF = re.compile(r"(\d[\d_]*(?:\.\d+)?)\s*%\s*of\b")
_PERCENT = re.compile(r"(\d[\d_]*(?:\.\d+)?)\s*%(?!\s*[\w(.])")
_SYMBOLS = str.maketrans(
    {"^": "**", "\N{MULTIPLICATION SIGN}": "*", "\N{DIVISION SIGN}": "/", "\N{MINUS SIGN}": "-"}
)


def _root(x: Number) -> Number:
    if isinstance(x, Fraction) and x >= 0:
        num, den = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if num * num == x.numerator and den * den == x.denominator:
            return Fraction(num, den)
    if x < 0:
        raise CalculatorError("sqrt of a negative number")
    return math.sqrt(x)


def _log(x: Number, base: Number | None = None) -> Number:
    if x <= 0 or (base is not None and (base <= 0 or base == 1)):
        raise CalculatorError("log of a number that is not positive, or in a base that is not")
    return math.log(x) if base is None else math.log(x, base)


def _integer(x: Number, what: str) -> int:
    if not isinstance(x, Fraction) or x.denominator != 1:
        raise CalculatorError(f"{what} takes whole numbers")
    return x.numerator


def _factorial(x: Number) -> Number:
    n = _integer(x, "factorial")
    if not 0 <= n <= MAX_FACTORIAL:
        raise CalculatorError(f"factorial takes 0 to {MAX_FACTORIAL}")
    return Fraction(math.factorial(n))


def _round(x: Number, places: Number = Fraction(0)) -> Number:
    digits = _integer(places, "round's places")
    return round(x, digits) if isinstance(x, float) else Fraction(round(x, digits))


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": _root,
    "abs": abs,
    "round": _round,
    "floor": lambda x: Fraction(math.floor(x)),
    "ceil": lambda x: Fraction(math.ceil(x)),
    "min": min,
    "max": max,
    "log": _log,
    "ln": _log,
    "log10": lambda x: _log(x, Fraction(10)),
    "log2": lambda x: _log(x, Fraction(2)),
    "exp": lambda x: math.exp(x),
    "sin": lambda x: math.sin(x),
    "cos": lambda x: math.cos(x),
    "tan": lambda x: math.tan(x),
    "factorial": _factorial,
    "gcd": lambda *xs: Fraction(math.gcd(*(_integer(x, "gcd") for x in xs))),
    "lcm": lambda *xs: Fraction(math.lcm(*(_integer(x, "lcm") for x in xs))),
}
CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e}


def evaluate(expression: str) -> Number:
    """The value of ``expression``; raises CalculatorError if it is not plain arithmetic, is too
    large, or divides by zero."""
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"the expression is longer than {MAX_LENGTH} characters")
    text = _PERCENT_OF.sub(r"(\1/100)*", expression.translate(_SYMBOLS))
    text = _PERCENT.sub(r"(\1/100)", text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression ({exc.msg})") from None
    walk = _Walk(time.monotonic() + TIME_LIMIT_S)
    try:
        return walk(tree.body)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, CalculatorError):
            raise
        raise CalculatorError(f"out of range ({exc})") from None


def render(value: Number) -> str:
    """A value as the model should read it: whole numbers and terminating decimals exactly, other
    fractions as ``p/q`` with their decimal value, floats to 15 significant digits."""
    if isinstance(value, float):
        return format(value, ".15g")
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    for prime in (2, 5):
        while den % prime == 0:
            den //= prime
    if den == 1:
        places = max(_multiplicity(value.denominator, 2), _multiplicity(value.denominator, 5))
        scaled = abs(value.numerator) * 10**places // value.denominator
        sign = "-" if value < 0 else ""
        whole, frac = divmod(scaled, 10**places)
        return f"{sign}{whole}.{frac:0{places}d}"
    return f"{value.numerator}/{value.denominator} ≈ {format(float(value), '.15g')}"


def calculate(expression: str) -> str:
    """``evaluate`` then ``render``."""
    return render(evaluate(expression))


def _multiplicity(n: int, prime: int) -> int:
    count = 0
    while n % prime == 0:
        n //= prime
        count += 1
    return count


class _Walk:
    """Evaluates one syntax tree, node by node, within its time limit."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, node: ast.expr) -> Number:
        if time.monotonic() > self.deadline:
            raise CalculatorError(f"the expression took longer than {TIME_LIMIT_S} s")
        return _checked(self._value(node))

    def _value(self, node: ast.expr) -> Number:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.Constant) and type(node.value) is float:
            return Fraction(str(node.value))
        if isinstance(node, ast.Name) and node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            return self._binary(node.op, self(node.left), self(node.right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            function = FUNCTIONS.get(node.func.id)
            if function is None:
                raise CalculatorError(f"no function {node.func.id!r} (there are {', '.join(FUNCTIONS)})")
            try:
                return function(*(self(arg) for arg in node.args))
            except TypeError:
                raise CalculatorError(f"{node.func.id} was given the wrong number of arguments") from None
        if isinstance(node, ast.Name):
            raise CalculatorError(f"unknown name {node.id!r} (constants: {', '.join(CONSTANTS)})")
        raise CalculatorError(f"{type(node).__name__} is not arithmetic")

    def _binary(self, op: ast.operator, left: Number, right: Number) -> Number:
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return left * right
        if isinstance(op, ast.Div):
            return left / right
        if isinstance(op, ast.FloorDiv):
            return Fraction(left // right)
        if isinstance(op, ast.Mod):
            return left % right
        if isinstance(op, ast.Pow):
            return _power(left, right)
        raise CalculatorError(f"the operator {type(op).__name__} is not arithmetic")


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1 and isinstance(base, Fraction):
        if abs(exponent.numerator) > MAX_EXPONENT:
            raise CalculatorError(f"exponents are limited to {MAX_EXPONENT}")
        size = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(exponent.numerator)
        if size > MAX_DIGITS * 3.33:
            raise CalculatorError(f"the result would have more than {MAX_DIGITS} digits")
        power: Fraction = base**exponent.numerator
        return power
    if base < 0:
        raise CalculatorError("a negative number to a fractional power is not a real number")
    return math.pow(base, exponent)


def _checked(value: Number) -> Number:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CalculatorError("the result is not a finite number")
        return value
    limit = MAX_DIGITS * 3.33
    if value.numerator.bit_length() > limit or value.denominator.bit_length() > limit:
        raise CalculatorError(f"a number along the way has more than {MAX_DIGITS} digits")
    return value
