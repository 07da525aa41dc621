#include "header.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "util.hpp"

namespace shmbus::cli {
namespace {

std::string_view as_chars(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Property Header::property() const {
  switch (type) {
    case PropertyType::Int64:
      return {name, int64};
    case PropertyType::Double:
      return {name, float64};
    case PropertyType::Bool:
      return {name, boolean};
    case PropertyType::Bytes:
      return {name, PropertyValue::bytes(std::as_bytes(std::span(text.data(), text.size())))};
    default:
      return {name, std::string_view(text)};
  }
}

std::optional<Header> parse_header(std::string_view arg, std::string* why) {
  const auto eq = arg.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    *why = "header '" + std::string(arg) + "' must be name=value (or name:TYPE=value), with a " +
           "non-empty name";
    return std::nullopt;
  }
  Header h;
  std::string_view name = arg.substr(0, eq);
  const std::string_view value = arg.substr(eq + 1);
  const auto colon = name.rfind(':');
  std::string_view type = colon == std::string_view::npos ? "" : name.substr(colon + 1);
  if (type == "string" || type == "int" || type == "double" || type == "bool" || type == "bytes")
    name = name.substr(0, colon);
  else
    type = "string";
  h.name = std::string(name);
  auto bad = [&](const std::string& what) {
    *why = "header '" + std::string(arg) + "': " + what;
    return std::nullopt;
  };
  if (h.name.empty()) return bad("the name is empty");
  if (h.name.size() > kMaxPropertyNameBytes)
    return bad("names are at most " + std::to_string(kMaxPropertyNameBytes) + " bytes");
  if (type == "string") {
    h.text = std::string(value);
  } else if (type == "int") {
    h.type = PropertyType::Int64;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), h.int64);
    if (ec != std::errc{} || end != value.data() + value.size() || value.empty())
      return bad("'" + std::string(value) + "' is not a 64-bit integer");
  } else if (type == "double") {
    h.type = PropertyType::Double;
    const std::string v(value);
    char* end = nullptr;
    errno = 0;
    h.float64 = std::strtod(v.c_str(), &end);
    if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE)
      return bad("'" + v + "' is not a number");
  } else if (type == "bool") {
    h.type = PropertyType::Bool;
    if (value == "true" || value == "1") {
      h.boolean = true;
    } else if (value == "false" || value == "0") {
      h.boolean = false;
    } else {
      return bad("'" + std::string(value) + "' is not true or false");
    }
  } else {
    h.type = PropertyType::Bytes;
    std::string_view hex = value;
    if (hex.starts_with("0x")) hex.remove_prefix(2);
    if (hex.size() % 2 != 0) return bad("bytes are given in hex, two digits a byte");
    for (std::size_t i = 0; i < hex.size(); i += 2) {
      const int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
      if (hi < 0 || lo < 0) return bad("'" + std::string(hex) + "' is not hex");
      h.text += static_cast<char>(hi << 4 | lo);
    }
  }
  if (h.type == PropertyType::String || h.type == PropertyType::Bytes) {
    if (h.text.size() > kMaxPropertyValueBytes)
      return bad("values are at most " + std::to_string(kMaxPropertyValueBytes) + " bytes");
  }
  return h;
}

std::string header_text(const Property& p) {
  std::string out = "\"" + escape(p.name) + "\"=";
  const PropertyValue& v = p.value;
  switch (v.type()) {
    case PropertyType::String:
      return out + "\"" + escape(*v.string()) + "\"";
    case PropertyType::Int64:
      return out + std::to_string(*v.int64());
    case PropertyType::Double: {
      char num[32];
      std::snprintf(num, sizeof num, "%.17g", *v.float64());
      return out + num;
    }
    case PropertyType::Bool:
      return out + (*v.boolean() ? "true" : "false");
    case PropertyType::Bytes: {
      out += "0x";
      char cell[4];
      const std::span<const std::byte> bytes =
          *v.bytes();  // not `: *v.bytes()`: the optional is a temporary
      for (std::byte b : bytes) {
        std::snprintf(cell, sizeof cell, "%02x", static_cast<unsigned>(b));
        out += cell;
      }
      return out;
    }
  }
  return out;
}

nlohmann::json header_json(const PropertyValue& v) {
  using nlohmann::json;
  switch (v.type()) {
    case PropertyType::String: {
      const std::string_view s = *v.string();
      return valid_utf8(s) ? json(std::string(s)) : json(escape(s));
    }
    case PropertyType::Int64:
      return *v.int64();
    case PropertyType::Double:
      return std::isfinite(*v.float64()) ? json(*v.float64()) : json(nullptr);
    case PropertyType::Bool:
      return *v.boolean();
    case PropertyType::Bytes:
      return json{{"base64", base64(as_chars(*v.bytes()))}};
  }
  return nullptr;
}

}  // namespace shmbus::cli
