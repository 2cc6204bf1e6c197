"""The one exception type of the codec layer."""


class CodecError(ValueError):
    """A corrupt, truncated or hostile frame or container; the message says what is wrong.

    Also raised for impossible requests (wrong ``out`` size, missing or mismatched ``base``),
    since to the caller those are the same class of problem: these bytes cannot be decoded.
    """
