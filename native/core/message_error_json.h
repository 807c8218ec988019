// The ERROR payload of docs/PROTOCOL.md §2.4, for the message API (message.cc): built as the
// reference builds it ({"code":…,"message":…}, code cut to 128 bytes, message shortened to fit
// max_message_size), and read as the reference reads it (message and code when they are
// strings of a JSON object; otherwise the whole payload is the message).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace shmch {
namespace message {

// The longest start of s[0..n) of at most max bytes that does not end inside a UTF-8 sequence.
inline size_t utf8_cut(const char* s, size_t n, size_t max) {
  if (n <= max) return n;
  size_t end = max;
  // Back over continuation bytes (10xxxxxx) to the start of the character that does not fit.
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) end--;
  return end;
}

// The escaped form of one byte of a JSON string (UTF-8 bytes >= 0x80 pass as they are).
inline void append_json_byte(std::string& out, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  switch (c) {
    case '"': out += "\\\""; return;
    case '\\': out += "\\\\"; return;
    case '\n': out += "\\n"; return;
    case '\r': out += "\\r"; return;
    case '\t': out += "\\t"; return;
    case '\b': out += "\\b"; return;
    case '\f': out += "\\f"; return;
    default:
      if (c < 0x20 || c == 0x7F) {
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
      } else {
        out += static_cast<char>(c);
      }
  }
}

inline void append_json_string(std::string& out, const char* s, size_t n) {
  out += '"';
  for (size_t i = 0; i < n; i++) append_json_byte(out, static_cast<unsigned char>(s[i]));
  out += '"';
}

inline size_t json_escaped_size(unsigned char c) {
  std::string one;
  append_json_byte(one, c);
  return one.size();
}

inline std::string error_json(const char* code, size_t code_len, const char* message, size_t message_len) {
  std::string out = "{";
  if (code != nullptr) {
    out += "\"code\":";
    append_json_string(out, code, code_len);
    out += ',';
  }
  out += "\"message\":";
  append_json_string(out, message, message_len);
  out += '}';
  return out;
}

// The ERROR payload for (code, message) in at most max bytes (PROTOCOL §2.4). code may be NULL.
inline std::string encode_error(const char* code, const char* message, size_t max) {
  if (message == nullptr) message = "";
  size_t message_len = std::strlen(message);
  size_t code_len = code != nullptr ? utf8_cut(code, std::strlen(code), 128) : 0;
  std::string whole = error_json(code, code_len, message, message_len);
  if (whole.size() <= max) return whole;
  // Keep the code; cut the message to its longest start (whole characters) that fits with the
  // marker after it.
  std::string marker = "\xE2\x80\xA6 (truncated, " + std::to_string(message_len) + " bytes)";
  std::string bare = error_json(code, code_len, marker.data(), marker.size());
  if (bare.size() <= max) {
    size_t room = max - bare.size();
    size_t kept = 0;
    size_t used = 0;
    for (size_t i = 0; i < message_len; i++) {
      used += json_escaped_size(static_cast<unsigned char>(message[i]));
      if (used > room) break;
      // A cut is allowed before a byte that starts a character.
      if (i + 1 == message_len || (static_cast<unsigned char>(message[i + 1]) & 0xC0) != 0x80) kept = i + 1;
    }
    std::string text(message, kept);
    text += marker;
    return error_json(code, code_len, text.data(), text.size());
  }
  std::string code_only = error_json(code, code_len, "", 0);
  return code_only.size() <= max ? code_only : std::string();
}

// A small JSON reader: enough to take the string members of one object, skipping other values.
class JsonObjectReader {
 public:
  JsonObjectReader(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}

  // True if the input is exactly one JSON object; *message and *code receive its string
  // members of those names (the last one wins, as in JSON.parse), *has_* whether they were.
  bool read(std::string* message, bool* has_message, std::string* code, bool* has_code) {
    *has_message = *has_code = false;
    skip_ws();
    if (!eat('{')) return false;
    skip_ws();
    if (!eat('}')) {
      for (;;) {
        std::string key;
        skip_ws();
        if (!string(&key)) return false;
        skip_ws();
        if (!eat(':')) return false;
        skip_ws();
        if (p_ < end_ && *p_ == '"') {
          std::string value;
          if (!string(&value)) return false;
          if (key == "message") *message = value, *has_message = true;
          if (key == "code") *code = value, *has_code = true;
        } else {
          if (key == "message") *has_message = false;
          if (key == "code") *has_code = false;
          if (!skip_value(0)) return false;
        }
        skip_ws();
        if (eat(',')) continue;
        if (eat('}')) break;
        return false;
      }
    }
    skip_ws();
    return p_ == end_;
  }

 private:
  bool eat(char c) {
    if (p_ < end_ && *p_ == static_cast<uint8_t>(c)) {
      p_++;
      return true;
    }
    return false;
  }
  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) p_++;
  }
  static void append_utf8(std::string* out, uint32_t cp) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  bool hex4(uint32_t* v) {
    if (end_ - p_ < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; i++) {
      uint8_t c = *p_++;
      uint32_t d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 16;
      if (d == 16) return false;
      *v = *v * 16 + d;
    }
    return true;
  }
  bool string(std::string* out) {
    if (!eat('"')) return false;
    while (p_ < end_) {
      uint8_t c = *p_++;
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c != '\\') {
        *out += static_cast<char>(c);
        continue;
      }
      if (p_ == end_) return false;
      uint8_t e = *p_++;
      switch (e) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case '/': *out += '/'; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          uint32_t cp;
          if (!hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
            const uint8_t* save = p_;
            p_ += 2;
            uint32_t low;
            if (!hex4(&low)) return false;
            if (low >= 0xDC00 && low <= 0xDFFF) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              p_ = save;  // a lone high surrogate, then another escape
            }
          }
          // A lone surrogate has no UTF-8 form: U+FFFD, as a UTF-8 decoder would give.
          if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
          append_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool skip_value(int depth) {
    if (depth > 64 || p_ == end_) return false;
    uint8_t c = *p_;
    if (c == '"') {
      std::string ignored;
      return string(&ignored);
    }
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      p_++;
      skip_ws();
      if (eat(close)) return true;
      for (;;) {
        skip_ws();
        if (c == '{') {
          std::string ignored;
          if (!string(&ignored)) return false;
          skip_ws();
          if (!eat(':')) return false;
          skip_ws();
        }
        if (!skip_value(depth + 1)) return false;
        skip_ws();
        if (eat(',')) continue;
        return eat(close);
      }
    }
    for (const char* word : {"true", "false", "null"}) {
      size_t n = std::strlen(word);
      if (static_cast<size_t>(end_ - p_) >= n && std::memcmp(p_, word, n) == 0) {
        p_ += n;
        return true;
      }
    }
    // A number: -?digits[.digits][e[+-]digits], checked loosely but without reading past it.
    const uint8_t* start = p_;
    if (p_ < end_ && *p_ == '-') p_++;
    bool digits = false;
    while (p_ < end_ && ((*p_ >= '0' && *p_ <= '9') || *p_ == '.' || *p_ == 'e' || *p_ == 'E' || *p_ == '+' ||
                         *p_ == '-')) {
      digits = digits || (*p_ >= '0' && *p_ <= '9');
      p_++;
    }
    return p_ != start && digits;
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

// s made a C string of valid UTF-8, as shmch_message.error_message promises: a NUL (a JSON
// "\u0000", or one in a payload that is not JSON) and each ill-formed sequence become U+FFFD,
// one per maximal subpart of a sequence (Unicode §3.9, as TextDecoder does).
inline void make_c_string(std::string* s) {
  const std::string& in = *s;
  std::string out;
  out.reserve(in.size());
  static const char kReplacement[] = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < in.size()) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    if (c >= 0x01 && c <= 0x7F) {
      out += static_cast<char>(c);
      i++;
      continue;
    }
    // The length of the sequence c starts, and the range of its second byte (Table 3-7).
    size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) length = 2;
    else if (c == 0xE0) length = 3, low = 0xA0;
    else if (c == 0xED) length = 3, high = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) length = 3;
    else if (c == 0xF0) length = 4, low = 0x90;
    else if (c == 0xF4) length = 4, high = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) length = 4;
    size_t good = length == 0 ? 0 : 1;  // bytes of the sequence that fit so far
    while (good > 0 && good < length && i + good < in.size()) {
      unsigned char next = static_cast<unsigned char>(in[i + good]);
      unsigned char lo = good == 1 ? low : 0x80, hi = good == 1 ? high : 0xBF;
      if (next < lo || next > hi) break;
      good++;
    }
    if (length > 0 && good == length) {
      out.append(in, i, length);
      i += length;
    } else {
      out += kReplacement;  // a NUL, a byte that starts nothing, or a cut-off sequence
      i += good > 0 ? good : 1;
    }
  }
  s->swap(out);
}

// What a requester makes of an ERROR payload (PROTOCOL §2.4), as C strings (make_c_string).
inline void decode_error(const uint8_t* payload, size_t size, std::string* message, std::string* code,
                         bool* has_code) {
  std::string m;
  bool has_message = false;
  JsonObjectReader reader(payload, size);
  bool object = reader.read(&m, &has_message, code, has_code);
  if (!object) {
    *has_code = false;
    code->clear();
  }
  if (object && has_message) {
    *message = m;
  } else {
    message->assign(reinterpret_cast<const char*>(payload), size);
  }
  make_c_string(message);
  make_c_string(code);
}

}  // namespace message
}  // namespace shmch
