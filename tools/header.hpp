// tools/header.hpp — typed message headers (properties) on the command line,
// and their text and JSON forms in `shmbus tail`.
//
//   -H name=value          a string
//   -H name:int=5          an int64        -H name:double=1.5   a double
//   -H name:bool=true      true or false   -H name:bytes=0a1b   bytes, in hex
//   -H name:string=a=b     a string (for a name that itself ends in ":int" etc.)
// A name with a colon but no known type after it is a string header's name.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/message.hpp"

namespace shmbus::cli {

// A parsed -H: owns what its Property views.
struct Header {
  std::string name;
  PropertyType type = PropertyType::String;
  std::string text;  // String; Bytes: the decoded bytes
  std::int64_t int64 = 0;
  double float64 = 0;
  bool boolean = false;
  Property property() const;
};

// nullopt with `why` set on bad input.
std::optional<Header> parse_header(std::string_view arg, std::string* why);

// "name"="value", "n"=5, "n"=1.5, "n"=true, "n"=0x0a1b
std::string header_text(const Property& p);
// A string, a number, a bool, or {"base64": ...} for bytes.
nlohmann::json header_json(const PropertyValue& v);

}  // namespace shmbus::cli
