// The monitoring files under deploy/ without a Prometheus: each Grafana dashboard is JSON with
// a unique uid and title, takes its datasource from its `datasource` variable in every panel
// and target, has unique panel ids and targets with an expression; the provisioning files
// point at the dashboards' folder; and every alert of deploy/prometheus is explained in
// docs/operations.md. (The expressions themselves are evaluated in prometheus_scrape_test.cc.)
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qshard {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(DeployFilesTest, DashboardsAreWellFormedAndUseTheirDatasourceVariable) {
  std::set<std::string> uids, titles;
  int dashboards = 0;
  for (const auto& file : fs::directory_iterator("deploy/grafana/dashboards")) {
    SCOPED_TRACE(file.path().string());
    ASSERT_EQ(file.path().extension(), ".json");
    const json dashboard = json::parse(ReadText(file.path()), nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(dashboard.is_object()) << "not JSON";
    ++dashboards;
    EXPECT_TRUE(uids.insert(dashboard.value("uid", "")).second) << "uid reused or missing";
    EXPECT_TRUE(titles.insert(dashboard.value("title", "")).second) << "title reused or missing";
    bool has_variable = false;
    for (const json& variable : dashboard["templating"]["list"])
      has_variable |= variable.value("name", "") == "datasource" && variable.value("type", "") == "datasource";
    EXPECT_TRUE(has_variable) << "no `datasource` variable";
    std::set<int> ids;
    ASSERT_FALSE(dashboard["panels"].empty());
    for (const json& panel : dashboard["panels"]) {
      const std::string title = panel.value("title", "");
      EXPECT_TRUE(ids.insert(panel.value("id", 0)).second) << title << ": panel id reused or missing";
      EXPECT_EQ(panel["datasource"].value("uid", ""), "${datasource}") << title;
      const json& grid = panel["gridPos"];
      EXPECT_LE(grid.value("x", 99) + grid.value("w", 99), 24) << title << ": wider than the grid";
      std::set<std::string> refs;
      ASSERT_FALSE(panel["targets"].empty()) << title;
      for (const json& target : panel["targets"]) {
        EXPECT_FALSE(target.value("expr", "").empty()) << title;
        EXPECT_TRUE(refs.insert(target.value("refId", "")).second) << title << ": refId reused or missing";
        EXPECT_EQ(target["datasource"].value("uid", ""), "${datasource}") << title;
      }
    }
  }
  EXPECT_EQ(dashboards, 4);
}

TEST(DeployFilesTest, ProvisioningPointsAtTheDashboardsAndPrometheus) {
  const std::string providers = ReadText("deploy/grafana/provisioning/dashboards/qshard.yml");
  EXPECT_NE(providers.find("type: file"), std::string::npos);
  EXPECT_NE(providers.find("path: /var/lib/grafana/dashboards/qshard"), std::string::npos);
  const std::string datasources = ReadText("deploy/grafana/provisioning/datasources/qshard-prometheus.yml");
  EXPECT_NE(datasources.find("type: prometheus"), std::string::npos);
  // docs/operations.md tells where each file goes; it must name the same path.
  EXPECT_NE(ReadText("docs/operations.md").find("/var/lib/grafana/dashboards/qshard"), std::string::npos);
}

TEST(DeployFilesTest, EveryAlertIsExplainedInTheOperationsGuide) {
  const std::string docs = ReadText("docs/operations.md");
  int alerts = 0;
  for (const auto& file : fs::directory_iterator("deploy/prometheus")) {
    std::ifstream in(file.path());
    for (std::string line; std::getline(in, line);) {
      const size_t at = line.find("- alert: ");
      if (at == std::string::npos) continue;
      const std::string name = line.substr(at + 9);
      ++alerts;
      EXPECT_NE(docs.find("| `" + name + "` ("), std::string::npos) << name << " has no row in docs/operations.md";
      EXPECT_NE(ReadText(file.path()).find("Alerts: " + name + "."), std::string::npos)
          << name << ": its description should point at its docs row";
    }
  }
  EXPECT_EQ(alerts, 8);
}

}  // namespace
}  // namespace qshard
