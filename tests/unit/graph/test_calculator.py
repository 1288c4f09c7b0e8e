"""The calculator: exact answers, the notations models write, and every limit an error."""

import pytest

from graph.calculator import MAX_LENGTH, CalculatorError, calculate
from graph.tools import CALCULATOR, ToolError, invoke


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("0.1 + 0.2", "0.3"),
        ("17 * 3 + 9", "60"),
        ("(7 - 3) * 1.5", "6"),
        ("1/3", "1/3 ≈ 0.333333333333333"),
        ("2/8", "0.25"),
        ("-7 // 2", "-4"),
        ("10 % 3", "1"),
        ("15% of 80", "12"),
        ("12.5% * 200", "25"),
        ("50%", "0.5"),
        ("2^10", "1024"),
        ("3 \N{MULTIPLICATION SIGN} 4 \N{MINUS SIGN} 2 \N{DIVISION SIGN} 4", "11.5"),
        ("sqrt(144)", "12"),
        ("sqrt(2)", "1.4142135623731"),
        ("factorial(20)", "2432902008176640000"),
        ("gcd(12, 18) + lcm(4, 6)", "18"),
        ("round(2.675, 2)", "2.68"),
        ("max(3, 1/2, -4)", "3"),
        ("2 ** -2", "0.25"),
        ("10 ** 30 + 1", "1000000000000000000000000000001"),
    ],
)
def test_exact_arithmetic(expression: str, value: str) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ('__import__("os")', "no function '__import__'"),
        ('__import__("os").system("id")', "Call is not arithmetic"),
        ("().__class__", "Attribute is not arithmetic"),
        ("[1, 2]", "List is not arithmetic"),
        ("'a' * 3", "Constant is not arithmetic"),
        ("x + 1", "unknown name 'x'"),
        ("1 / 0", "division by zero"),
        ("2 ** 100000", "exponents are limited"),
        ("9 ** 9 ** 9", "exponents are limited"),
        ("7 ** 9999", "more than 5000 digits"),
        ("factorial(100000)", "factorial takes 0 to 1000"),
        ("sqrt(-1)", "sqrt of a negative number"),
        ("(-8) ** 0.5", "not a real number"),
        ("log(0)", "log of a number that is not positive"),
        ("exp(100000)", "out of range"),
        ("1 +", "not an arithmetic expression"),
        ("1" * (MAX_LENGTH + 1), f"longer than {MAX_LENGTH} characters"),
        ("sqrt(1, 2)", "wrong number of arguments"),
        ("gcd(1.5, 2)", "gcd takes whole numbers"),
    ],
)
def test_what_is_not_plain_arithmetic_is_an_error_that_says_why(expression: str, error: str) -> None:
    with pytest.raises(CalculatorError, match=error.replace("(", r"\(").replace(")", r"\)")):
        calculate(expression)


async def test_the_tool_gives_errors_as_outcomes_and_cuts_long_results() -> None:
    tools = {"calculator": CALCULATOR}
    bad = await invoke(tools, "calculator", {"expression": "1/0"}, timeout_s=1, max_chars=100)
    assert (bad.result, bad.error) == ("", "division by zero")
    wrong = await invoke(tools, "calculator", {"expr": "1"}, timeout_s=1, max_chars=100)
    assert wrong.error is not None and "expression" in wrong.error
    unknown = await invoke(tools, "search", {}, timeout_s=1, max_chars=100)
    assert unknown.error == "there is no tool 'search' (tools: calculator)"
    long = await invoke(tools, "calculator", {"expression": "10 ** 500"}, timeout_s=1, max_chars=40)
    assert long.result.startswith("1000") and long.result.endswith("[cut at 40 of 501 characters]")
    with pytest.raises(ToolError):
        await CALCULATOR.run({"expression": None})  # type: ignore[dict-item]
