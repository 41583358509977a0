from flowcatalyst.core import jsoncodec


def test_dumps_is_compact_and_keeps_text_as_is():
    assert jsoncodec.dumps({"messageId": "a/b é"}) == '{"messageId":"a/b é"}'
    assert jsoncodec.dumps([1, None, True, 2.5]) == "[1,null,true,2.5]"


def test_loads_text_and_bytes():
    assert jsoncodec.loads('{"a": [1]}') == {"a": [1]}
    assert jsoncodec.loads('{"é": 1}'.encode()) == {"é": 1}
