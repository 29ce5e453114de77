// Tokenizer test inputs shared by the tests that compare our tokenizer with others (tiktoken,
// transformers.js's): not part of the library's API.

/** Hand-picked inputs covering every branch of the pre-tokenizer and the byte-level edges. */
export const EDGE_CASES = [
  '', ' ', '  ', 'a', 'Hello, world!', 'hello  world', 'hello   world  ', '\n', '\n\n\n', ' \n', '\n ', '\t\tindented',
  'line one\r\nline two\r\n', '\r\n\r\n', "I'm you're we've he'll she'd it's don't", "I'M YOU'RE", "'s's 'll'", "rock 'n' roll",
  '12345', '3.14159', '1,000,000', 'x²+y³', '٣٤٥ arabic digits', 'Ⅻ roman', 'café naïve résumé', 'Ærøskøbing',
  '中文字符测试', '日本語のテキスト', '한국어 텍스트', 'Привет мир', 'שלום עולם', 'مرحبا بالعالم', 'ελληνικά',
  '👋🌍', '👩‍👩‍👧‍👦 family', '🏳️‍🌈', '🤷🏽‍♀️', '1️⃣', 'e\u0301 combining', 'zero\u200bwidth', 'nbsp\u00a0here',
  'nel\u0085here', 'bom\ufeffhere', 'ideographic\u3000space', 'line\u2028sep', '\u0000\u0001\u0002\u001f\u007f',
  'tabs\tand\vvertical\fform', '    four spaces', 'trailing spaces    ', 'x' + ' '.repeat(100) + 'y', '!!!???...', '<html><body>',
  'def f(x):\n    return x ** 2\n', '{"key": [1, 2, 3]}', 'https://example.com/a?b=c&d=e', 'email@example.com', '$100.00 €50 £20 ¥1000',
  '<|endoftext|>', 'before<|endoftext|>after', '<|endoftext', ' '.repeat(5000), '9'.repeat(3000), 'ab'.repeat(2000),
];
